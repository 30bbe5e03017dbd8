package greeting_test

import (
	"errors"
	"strings"
	"testing"

	"example.com/go_service/greeting"
)

func TestFor(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"world", "Hello, world!", nil},
		{"  Ada ", "Hello, Ada!", nil},
		{"", "", greeting.ErrBadName},
		{"bad\x00name", "", greeting.ErrBadName},
		{strings.Repeat("x", 65), "", greeting.ErrBadName},
	} {
		got, err := greeting.For(tc.name)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("For(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}
