package foreman_test

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/foreman"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/runtimes"
)

// A node from parts: a client signed in as the node's processor account, a
// worker on the runc runtime, the runtime's image store. Run until SIGTERM,
// then drain for up to ten minutes (kolejka-foreman does the same wiring
// from kolejka.conf's settings).
func Example() {
	ctx := context.Background()
	cl, err := client.New(ctx, client.Config{Server: "https://kolejka.example.org/", Token: os.Getenv("NODE_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	rt, err := runtimes.Open("runc", runtimes.Options{})
	if err != nil {
		log.Fatal(err)
	}
	images, err := runtimes.OpenImages(runtimes.Options{})
	if err != nil {
		log.Fatal(err)
	}
	w, err := worker.New(ctx, worker.Config{Temp: "/var/lib/kolejka/foreman/scratch"}, rt)
	if err != nil {
		log.Fatal(err)
	}
	m, err := foreman.DetectMachine(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var caps spec.Limits
	_ = spec.ParseLimit(&caps, "time", "10M") // no task over ten minutes here
	capacity, cores := m.Capacity(foreman.DefaultMemoryReserve, caps, false)
	defaults, _ := spec.ParseLimitList("cpus=1,memory=1G")
	f, err := foreman.New(foreman.Config{
		Client:   cl,
		Executor: w,
		Images:   foreman.RuncImages{Store: images},
		Dir:      "/var/lib/kolejka/foreman",
		Capacity: capacity,
		Cores:    cores,
		Defaults: defaults,
		Tags:     []string{"judges"},
		Logger:   slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		drain, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		f.Shutdown(drain) // past the deadline: running tasks are killed and handed back
	}()
	if err := f.Run(ctx); !errors.Is(err, foreman.ErrStopped) {
		log.Fatal(err)
	}
}
