package enclave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Undo is a stack of teardown steps: each successful setup step pushes the
// function that reverses it, and Unwind runs them newest first.
type Undo struct {
	steps []undoStep
	log   *slog.Logger
}

type undoStep struct {
	name string
	fn   func(context.Context) error
}

// NewUndo returns an empty stack that logs each step to log (nil: no log).
func NewUndo(log *slog.Logger) *Undo {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Undo{log: log}
}

// Push records fn, named for logs and errors, as the reversal of the step
// just done.
func (u *Undo) Push(name string, fn func(context.Context) error) {
	u.steps = append(u.steps, undoStep{name, fn})
}

// Len is the number of steps not yet undone.
func (u *Undo) Len() int { return len(u.steps) }

// Unwind runs every step, newest first, even after a failure (a failed
// unmount must not stop the NBD disconnect below it), and returns all
// failures joined. ctx bounds the whole teardown; steps still get it once it
// is done, so each can fall back to a forced variant.
func (u *Undo) Unwind(ctx context.Context) error {
	var errs []error
	for len(u.steps) > 0 {
		s := u.steps[len(u.steps)-1]
		u.steps = u.steps[:len(u.steps)-1]
		if err := s.fn(ctx); err != nil {
			u.log.Error("teardown step failed", "step", s.name, "err", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.name, err))
			continue
		}
		u.log.Info("teardown step done", "step", s.name)
	}
	return errors.Join(errs...)
}
