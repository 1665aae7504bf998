// Package xmlresponse builds the XML documents that answer sipgate.io push
// requests (the newCall and dtmf events).
//
// sipgate.io posts an event to our webhook and reads the XML body of our reply
// to decide what to do with the call. A reply is a single Response element
// that may name URLs for follow-up events (onAnswer, onHangup) and may carry
// one action: Dial, Play, Gather, Reject or Hangup. A Response without an
// action only subscribes to follow-up events; the call then proceeds as it
// would have without sipgate.io.
//
// The format follows sipgate's documentation in the sipgate/sipgate.io
// repository (README.md, "The XML response") and the response builder of
// sipgate's own client library sipgate-io/sipgateio-node
// (lib/webhook/webhook.ts, lib/webhook/webhook.types.ts).
//
// Every value is checked before anything is written: Validate and Marshal
// refuse combinations sipgate does not accept with an error that wraps
// ErrInvalid and a more specific sentinel, and names the offending field
// (see FieldError). Values are escaped by encoding/xml; nothing from the
// caller is concatenated into the document.
//
// A handler answering a newCall event looks like this:
//
//	body, err := xmlresponse.Response{
//		OnAnswer: "https://callstate.example.com/sipgate/answer",
//		OnHangup: "https://callstate.example.com/sipgate/hangup",
//		Action:   xmlresponse.Dial{Numbers: []string{"4915799912345"}},
//	}.Marshal()
//	if err != nil {
//		return err // a programming error: the response was invalid
//	}
//	w.Header().Set("Content-Type", xmlresponse.ContentType)
//	w.Write(body)
package xmlresponse
