package service

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

type options struct {
	farmID       string
	builderID    string
	maxArtifacts int
	logger       *slog.Logger
}

// Option configures a Server.
type Option func(*options) error

// WithFarmID sets the farm id recorded as internalParameters.farmId.
// Default "local".
func WithFarmID(id string) Option {
	return func(o *options) error {
		if id == "" || strings.ContainsAny(id, " /\n") {
			return fmt.Errorf("service: farm id %q must be non-empty without spaces or slashes", id)
		}
		o.farmID = id
		return nil
	}
}

// WithBuilderID sets runDetails.builder.id. Default
// "https://hallmark.build/farm/" + the farm id.
func WithBuilderID(id string) Option {
	return func(o *options) error {
		if id == "" {
			return errors.New("service: empty builder id")
		}
		o.builderID = id
		return nil
	}
}

// WithMaxArtifacts bounds the artifacts (and targets) of one request.
// Default 1000.
func WithMaxArtifacts(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("service: max artifacts %d must be positive", n)
		}
		o.maxArtifacts = n
		return nil
	}
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("service: nil logger")
		}
		o.logger = l
		return nil
	}
}

func makeOptions(opts []Option) (options, error) {
	o := options{farmID: "local", maxArtifacts: 1000, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	if o.builderID == "" {
		o.builderID = "https://hallmark.build/farm/" + o.farmID
	}
	return o, nil
}
