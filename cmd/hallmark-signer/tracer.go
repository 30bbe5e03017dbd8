package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/hallmark-build/hallmark/signer/service"
	"github.com/hallmark-build/hallmark/signer/source"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// newTracer opens the farm's records (read-only), the source repository and
// the allowlist, and returns the tracer the server uses.
func newTracer(c config, log *slog.Logger) (service.Tracer, func(), error) {
	farm, err := trace.OpenFarm(c.records)
	if err != nil {
		return nil, nil, err
	}
	if c.sourceRepository == "" {
		return nil, nil, errors.New("--source-repository is required: source inputs are checked against it")
	}
	repo, err := source.Open(context.Background(), c.sourceRepository, c.protectedBranch)
	if err != nil {
		return nil, nil, err
	}
	var opts []trace.Option
	if c.untenantedAs != "" {
		opts = append(opts, trace.WithUntenantedRecordsAs(c.untenantedAs))
	}
	if c.allowlist != "" {
		data, err := os.ReadFile(c.allowlist)
		if err != nil {
			return nil, nil, err
		}
		a, err := trace.ParseAllowlist(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", c.allowlist, err)
		}
		opts = append(opts, trace.WithAllowlist(a))
		if c.requireAllowlist {
			opts = append(opts, trace.RequireAllowlist())
		}
	}
	sources := trace.GitSources(repo)
	if c.sourceRepositoryURI != "" {
		sources = trace.NamedGitSources(repo, c.sourceRepositoryURI)
	}
	t, err := trace.New(farm.Log, farm.CAS, sources, opts...)
	if err != nil {
		return nil, nil, err
	}
	log.Info("tracing farm records", "records", c.records, "source", c.sourceRepository, "branch", c.protectedBranch)
	return service.FromTrace(t), func() {}, nil
}
