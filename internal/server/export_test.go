package server

// SetPauseHook makes f called each time a long poll of a server opened
// with c starts waiting for an event (a task, a result, its deadline), so
// that a test acts on a poll that waits rather than one still looking.
func SetPauseHook(c *Config, f func()) { c.pausing = f }

// SetCollectHook makes f called after each periodic garbage-collection
// pass of a server opened with c.
func SetCollectHook(c *Config, f func()) { c.collected = f }
