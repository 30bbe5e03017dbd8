// Package greeting builds the messages the service returns.
package greeting

import (
	"errors"
	"strings"
	"unicode"
)

// ErrBadName is returned for names that are empty, too long or not printable.
var ErrBadName = errors.New("greeting: name must be 1-64 printable characters")

// For returns the greeting for name, or ErrBadName.
func For(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 {
		return "", ErrBadName
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", ErrBadName
		}
	}
	return "Hello, " + name + "!", nil
}
