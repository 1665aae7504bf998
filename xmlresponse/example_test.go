package xmlresponse_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/callstate/callstate/xmlresponse"
)

// A newCall push answered by ringing a mobile number, asking sipgate to
// report when the call is answered and when it ends.
func Example() {
	body, err := xmlresponse.Response{
		OnAnswer: "https://callstate.example.com/sipgate/answer",
		OnHangup: "https://callstate.example.com/sipgate/hangup",
		Action:   xmlresponse.Dial{Numbers: []string{"4915799912345"}},
	}.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(xmlresponse.ContentType)
	fmt.Println(string(body))
	// Output:
	// application/xml
	// <?xml version="1.0" encoding="UTF-8"?><Response onAnswer="https://callstate.example.com/sipgate/answer" onHangup="https://callstate.example.com/sipgate/hangup"><Dial><Number>4915799912345</Number></Dial></Response>
}

// An IVR menu: play a prompt and collect one digit, which sipgate posts to
// OnData as a dtmf event.
func ExampleGather() {
	body, err := xmlresponse.Response{
		Action: xmlresponse.Gather{
			OnData:    "https://callstate.example.com/sipgate/dtmf",
			MaxDigits: 1,
			Timeout:   5 * time.Second,
			Play:      &xmlresponse.Play{URL: "https://static.example.com/menu.wav"},
		},
	}.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(body))
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?><Response><Gather onData="https://callstate.example.com/sipgate/dtmf" maxDigits="1" timeout="5000"><Play><Url>https://static.example.com/menu.wav</Url></Play></Gather></Response>
}

// Invalid responses are refused before anything is written; the error names
// the field and matches ErrInvalid and a specific sentinel.
func ExampleResponse_Validate() {
	err := xmlresponse.Response{
		Action: xmlresponse.Dial{Numbers: []string{"0211 1234567"}},
	}.Validate()
	fmt.Println(err)
	fmt.Println(errors.Is(err, xmlresponse.ErrInvalid), errors.Is(err, xmlresponse.ErrInvalidNumber))
	// Output:
	// xmlresponse: Dial.Numbers[0]: not an E.164 number (3 to 15 digits, first not 0, optional leading +)
	// true true
}
