package blobstore

// Unwrapper is implemented by decorators, so that callers can reach an
// optional capability (Linker, FilePutter, Pinner) of the store underneath.
type Unwrapper interface {
	Unwrap() Store
}

// As finds the first store in s's decorator chain (s itself first) that
// implements T, for example As[Linker](s). Note that calls through the result
// bypass the decorators above it.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var zero T
	return zero, false
}
