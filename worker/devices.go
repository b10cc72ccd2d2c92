package worker

import specs "github.com/opencontainers/runtime-spec/specs-go"

// taskDevices is what a task may open among device nodes: the harmless
// character devices every program expects, as runc's default list. All
// else is denied (v1 devices controller, v2 eBPF), so even a device node a
// runtime forgot to hide cannot be used.
var taskDevices = func() []specs.LinuxDeviceCgroup {
	dev := func(major, minor int64) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Access: "rwm"}
		if minor >= 0 {
			d.Minor = &minor
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		dev(1, 3),    // /dev/null
		dev(1, 5),    // /dev/zero
		dev(1, 7),    // /dev/full
		dev(1, 8),    // /dev/random
		dev(1, 9),    // /dev/urandom
		dev(5, 0),    // /dev/tty
		dev(5, 2),    // /dev/ptmx
		dev(136, -1), // /dev/pts/*
	}
}()
