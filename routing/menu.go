package routing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
)

// Menu state travels in the URL of a Gather's onData: the menu's name and a
// signature over it and the call's id, so that whichever instance gets the
// dtmf that follows can answer it, and nobody can send a call into a menu
// it was not offered.

// Query parameters of a menu's onData URL.
const (
	MenuParam = "menu"
	SigParam  = "sig"
)

// MenuURL returns base (the webhook's URL) with the menu and its
// signature for the call callID as query parameters.
func MenuURL(base string, secret []byte, callID, menu string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + MenuParam + "=" + url.QueryEscape(menu) + "&" + SigParam + "=" + menuSig(secret, callID, menu)
}

// VerifyMenu reports whether sig is the signature MenuURL made for menu
// and callID with secret. It takes the same time whatever sig is.
func VerifyMenu(secret []byte, callID, menu, sig string) bool {
	if len(secret) == 0 {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(menuSig(secret, callID, menu)))
}

func menuSig(secret []byte, callID, menu string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("callstate-menu\x00"))
	m.Write([]byte(callID))
	m.Write([]byte{0})
	m.Write([]byte(menu))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}
