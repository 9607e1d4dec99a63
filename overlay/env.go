package overlay

import "strings"

// Environ returns the application's environment: env as the image config
// gives it, with PATH=DefaultPath added when env sets no PATH, as container
// runtimes do (and as the Nitro reference init's default environment
// does). Later duplicates win, as in execve.
func Environ(env []string) []string {
	out := append([]string{}, env...)
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return out
		}
	}
	return append(out, "PATH="+DefaultPath)
}
