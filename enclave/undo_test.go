package enclave

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestUndoReverseOrderAndErrors(t *testing.T) {
	var order []string
	u := NewUndo(nil)
	step := func(name string, err error) {
		u.Push(name, func(ctx context.Context) error {
			order = append(order, name)
			return err
		})
	}
	errMount := errors.New("device busy")
	step("disconnect nbd0", nil)
	step("remove dm image", nil)
	step("unmount /mnt/lower", errMount)
	step("unmount /mnt/root", nil)
	if u.Len() != 4 {
		t.Fatalf("Len = %d", u.Len())
	}
	err := u.Unwind(context.Background())
	if got := strings.Join(order, ", "); got != "unmount /mnt/root, unmount /mnt/lower, remove dm image, disconnect nbd0" {
		t.Fatalf("order: %s", got)
	}
	if !errors.Is(err, errMount) || !strings.Contains(err.Error(), "undo unmount /mnt/lower") {
		t.Fatalf("Unwind error %v, want the unmount failure named", err)
	}
	if u.Len() != 0 {
		t.Fatalf("Len after Unwind = %d", u.Len())
	}
	order = nil
	if err := u.Unwind(context.Background()); err != nil || len(order) != 0 {
		t.Fatalf("second Unwind ran %v, %v", order, err)
	}
}

func TestUndoGetsDoneContext(t *testing.T) {
	u := NewUndo(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	u.Push("force", func(ctx context.Context) error {
		ran = ctx.Err() != nil
		return nil
	})
	if err := u.Unwind(ctx); err != nil || !ran {
		t.Fatalf("step with a done context: ran=%v err=%v", ran, err)
	}
}
