package server

// This file owns the Prometheus metrics, on a registry private to each
// Server (no global state: two servers in one process, as in tests, do not
// mix their numbers). Counts that live in the database (tasks by state,
// blob bytes, pending callbacks) are read at scrape time.

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	dequeue   prometheus.Histogram
	requeued  prometheus.Counter
	failed    prometheus.Counter
	callbacks *prometheus.CounterVec
	firings   *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kolejka_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kolejka_http_request_duration_seconds",
			Help:    "HTTP request latency by route (long polls included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		dequeue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kolejka_dequeue_duration_seconds",
			Help:    "Time one dequeue transaction takes (expiry, scan, assignment), without long-poll waiting.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kolejka_leases_lapsed_total",
			Help: "Tasks returned to the queue because their node stopped answering.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kolejka_tasks_failed_by_server_total",
			Help: "Tasks given an SE result by the server (too many lost leases, or queue timeout).",
		}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kolejka_callbacks_total",
			Help: "Callback delivery attempts by outcome (delivered, retried, failed).",
		}, []string{"outcome"}),
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kolejka_trigger_firings_total",
			Help: "Firings of schedules and triggers by kind (schedule, result, run, request) and state (started, skipped, refused).",
		}, []string{"kind", "state"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.dequeue, m.requeued, m.failed, m.callbacks, m.firings,
		&dbCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// dbCollector reads database counts at scrape time.
type dbCollector struct{ s *Server }

var (
	descQueue = prometheus.NewDesc("kolejka_queue_depth",
		"Tasks waiting for a node.", nil, nil)
	descTasks = prometheus.NewDesc("kolejka_tasks",
		"Tasks by state (unassigned, assigned, resolved, cancelled).", []string{"state"}, nil)
	descBlobBytes = prometheus.NewDesc("kolejka_blob_bytes",
		"Bytes of blobs stored (each content once).", nil, nil)
	descBlobs = prometheus.NewDesc("kolejka_blobs",
		"Blobs stored.", nil, nil)
	descCallbacks = prometheus.NewDesc("kolejka_callbacks",
		"Callbacks in the outbox by state (pending, failed).", []string{"state"}, nil)
	// Per named queue (docs/queues.md), from the index of tasks by queue.
	descQueueQueued = prometheus.NewDesc("kolejka_queue_queued_tasks",
		"Tasks waiting in the queue.", []string{"queue"}, nil)
	descQueueRunning = prometheus.NewDesc("kolejka_queue_running_tasks",
		"Tasks of the queue assigned to nodes.", []string{"queue"}, nil)
	descQueueOldest = prometheus.NewDesc("kolejka_queue_oldest_wait_seconds",
		"How long the task at the queue's head has waited since it last entered the queue (0: empty).", []string{"queue"}, nil)
	descQueuePaused = prometheus.NewDesc("kolejka_queue_paused",
		"1 while the queue is paused (it keeps its tasks and hands none out).", []string{"queue"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueue
	ch <- descTasks
	ch <- descBlobBytes
	ch <- descBlobs
	ch <- descCallbacks
	ch <- descQueueQueued
	ch <- descQueueRunning
	ch <- descQueueOldest
	ch <- descQueuePaused
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := c.s.db.Stats(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(st.Unassigned))
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.Unassigned), "unassigned")
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.Assigned), "assigned")
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.Resolved), "resolved")
		ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(st.Cancelled), "cancelled")
	} else {
		ch <- prometheus.NewInvalidMetric(descTasks, err)
	}
	if n, bytes, err := c.s.db.BlobTotals(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descBlobBytes, prometheus.GaugeValue, float64(bytes))
		ch <- prometheus.MustNewConstMetric(descBlobs, prometheus.GaugeValue, float64(n))
	} else {
		ch <- prometheus.NewInvalidMetric(descBlobBytes, err)
	}
	if pending, failed, err := c.s.db.CallbackCounts(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descCallbacks, prometheus.GaugeValue, float64(pending), "pending")
		ch <- prometheus.MustNewConstMetric(descCallbacks, prometheus.GaugeValue, float64(failed), "failed")
	} else {
		ch <- prometheus.NewInvalidMetric(descCallbacks, err)
	}
	if qs, err := c.s.db.Queues(ctx); err == nil {
		now := c.s.now()
		for _, q := range qs {
			paused := 0.0
			if q.Paused {
				paused = 1
			}
			ch <- prometheus.MustNewConstMetric(descQueueQueued, prometheus.GaugeValue, float64(q.Depth), q.Name)
			ch <- prometheus.MustNewConstMetric(descQueueRunning, prometheus.GaugeValue, float64(q.Running), q.Name)
			ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, oldestAge(q, now).Seconds(), q.Name)
			ch <- prometheus.MustNewConstMetric(descQueuePaused, prometheus.GaugeValue, paused, q.Name)
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descQueueQueued, err)
	}
}
