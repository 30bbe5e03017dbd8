// Package signerpb holds the generated code of the signer's gRPC API
// (signer.proto). Regenerate with `go generate ./signer/signerpb` (needs
// protoc, protoc-gen-go and protoc-gen-go-grpc on PATH).
package signerpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative signer.proto
