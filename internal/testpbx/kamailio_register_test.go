package testpbx

import (
	"testing"
	"time"
)

func TestKamailioRegister(t *testing.T) {
	t.Parallel()
	k := StartKamailio(t)
	contact := "sip:102@127.0.0.1:5999"

	tests := []struct {
		name    string
		expires time.Duration
		want    bool
	}{
		{"Registered", time.Minute, true},
		{"Unregistered", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k.Register(t, "102", contact, tt.expires)
			if got := k.Registered(t, "102"); got != tt.want {
				t.Errorf("Registered(102) = %v, want %v", got, tt.want)
			}
		})
	}
	if k.Registered(t, "103") {
		t.Error("Registered(103) = true for an extension never registered")
	}
}
