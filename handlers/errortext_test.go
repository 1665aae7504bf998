package handlers

import (
	"errors"
	"net/http"
	"testing"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"
)

func TestErrorText(t *testing.T) {
	type form struct {
		CallID string `validate:"required"`
	}
	sv := &structValidator{v: validator.New()}
	invalid := sv.Validate(&form{})
	if invalid == nil {
		t.Fatal("an empty form passed validation")
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain error", errors.New("boom"), "boom"},
		{"message only", echo.NewHTTPError(http.StatusNotFound, "not found"), "not found"},
		{"message and cause", echo.NewHTTPError(http.StatusNotFound, "no call with id 7").SetInternal(errors.New("no rows")),
			"no call with id 7: no rows"},
		{"cause repeats the message", echo.NewHTTPError(http.StatusBadRequest, "bad").SetInternal(errors.New("bad: detail")),
			"bad: detail"},
		{"validation: the message names the field, the validator's text stays out", invalid, "CallID is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorText(tt.err); got != tt.want {
				t.Errorf("errorText = %q, want %q", got, tt.want)
			}
		})
	}
}
