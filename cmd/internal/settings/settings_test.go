package settings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/spec"
)

// resolveArgs runs a command declaring table's flags (and extra ones) on
// args and resolves table against f in its action.
func resolveArgs(t *testing.T, f *config.File, table []Setting, args ...string) error {
	t.Helper()
	app := &cli.App{
		Name:           "test",
		Flags:          Flags(table),
		Action:         func(c *cli.Context) error { return Resolve(c, f, table) },
		ExitErrHandler: func(*cli.Context, error) {},
	}
	return app.Run(append([]string{"test"}, args...))
}

func confFile(t *testing.T, text string) *config.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), config.FileName)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Each source wins over the ones after it: flag, variable, file, default.
func TestPrecedence(t *testing.T) {
	const env = "KOLEJKA_SETTINGS_TEST_VALUE"
	withFile := confFile(t, "[sec]\nvalue = file\n")
	for _, c := range []struct {
		name string
		env  *string
		file *config.File
		args []string
		want string
	}{
		{"default", nil, &config.File{}, nil, "default"},
		{"file", nil, withFile, nil, "file"},
		{"variable over file", ptr("env"), withFile, nil, "env"},
		{"flag over variable", ptr("env"), withFile, []string{"--value", "flag"}, "flag"},
		{"flag over file", nil, withFile, []string{"--value", "flag"}, "flag"},
		{"an empty variable is a value", ptr(""), withFile, nil, ""},
		{"no file at all", nil, nil, nil, "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != nil {
				t.Setenv(env, *c.env)
			} else {
				os.Unsetenv(env)
			}
			v := "default"
			table := []Setting{{Flag: &cli.StringFlag{Name: "value"}, Env: env, Section: "sec", Key: "value", Value: String(&v)}}
			if err := resolveArgs(t, c.file, table, c.args...); err != nil {
				t.Fatal(err)
			}
			if v != c.want {
				t.Errorf("value %q, want %q", v, c.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// In the file a key falls back to [default]; an empty value is absent.
func TestFileSections(t *testing.T) {
	f := confFile(t, "[default]\nboth = default\nonly = default\n[sec]\nboth = section\nempty =\n")
	both, only, empty := "", "", "kept"
	table := []Setting{
		{Section: "sec", Key: "both", Value: String(&both)},
		{Section: "sec", Key: "only", Value: String(&only)},
		{Section: "sec", Key: "empty", Value: String(&empty)},
	}
	if err := resolveArgs(t, f, table); err != nil {
		t.Fatal(err)
	}
	if both != "section" || only != "default" || empty != "kept" {
		t.Errorf("both %q only %q empty %q", both, only, empty)
	}
}

// Every bad value is reported at once, as a usage error naming its source;
// the good ones are stored.
func TestErrorsNameTheirSource(t *testing.T) {
	const env = "KOLEJKA_SETTINGS_TEST_SIZE"
	t.Setenv(env, "lots")
	f := confFile(t, "[sec]\ntime = soon\n")
	var size, limit int64
	var d time.Duration
	var good string
	table := []Setting{
		{Flag: &cli.StringFlag{Name: "limit"}, Section: "sec", Key: "limit", Value: Size(&limit)},
		{Env: env, Value: Size(&size)},
		{Section: "sec", Key: "time", Value: Duration(&d)},
		{Flag: &cli.StringFlag{Name: "good"}, Value: String(&good)},
	}
	err := resolveArgs(t, f, table, "--limit", "64MiB", "--good", "yes")
	var ce *cliexit.Error
	if !errors.As(err, &ce) || ce.Code != cliexit.Usage {
		t.Fatalf("error %v: not a usage error", err)
	}
	for _, want := range []string{`--limit: "64MiB" is not a size`, env + `: "lots" is not a size`, f.Path + `: [sec] time: "soon" is not a time`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if good != "yes" {
		t.Errorf("good %q: a good value beside bad ones must be stored", good)
	}
}

// A flag of any type is read as its text; a flag the running command does
// not declare is not a source.
func TestFlagsOfOtherTypes(t *testing.T) {
	on, n := false, 0
	var d time.Duration
	table := []Setting{
		{Flag: &cli.BoolFlag{Name: "on", Value: true}, Value: Bool(&on)},
		{Flag: &cli.IntFlag{Name: "n", Value: 8}, Value: IntAtLeast(&n, 1)},
		{Flag: &cli.Float64Flag{Name: "every", Value: 10}, Value: PositiveDuration(&d)},
	}
	if err := resolveArgs(t, nil, table, "--on=false", "--n", "3", "--every", "0.5"); err != nil {
		t.Fatal(err)
	}
	if on || n != 3 || d != 500*time.Millisecond {
		t.Errorf("on %v n %d every %v", on, n, d)
	}
	// Not given: the destination keeps its default, not the flag's.
	on, n, d = true, 2, time.Second
	if err := resolveArgs(t, nil, table); err != nil || !on || n != 2 || d != time.Second {
		t.Errorf("unset flags changed values: on %v n %d every %v (%v)", on, n, d, err)
	}
	if err := resolveArgs(t, nil, table, "--n", "0"); err == nil || !strings.Contains(err.Error(), "--n: must be at least 1") {
		t.Errorf("--n 0: %v", err)
	}

	// Declared by another command only: the variable still counts.
	t.Setenv("KOLEJKA_SETTINGS_TEST_OTHER", "env")
	v := ""
	undeclared := []Setting{{Flag: &cli.StringFlag{Name: "other"}, Env: "KOLEJKA_SETTINGS_TEST_OTHER", Value: String(&v)}}
	app := &cli.App{Name: "test", Action: func(c *cli.Context) error { return Resolve(c, nil, undeclared) }}
	if err := app.Run([]string{"test"}); err != nil || v != "env" {
		t.Errorf("undeclared flag: %q %v", v, err)
	}
}

// Flags shows a setting's variable in its flag's usage, leaving the
// setting's flag as it was.
func TestFlagsShowTheVariable(t *testing.T) {
	flag := &cli.StringFlag{Name: "x", Usage: "the x"}
	got := Flags([]Setting{{Flag: flag, Env: "X_VAR", Value: String(new(string))}, {Key: "no-flag"}})
	if len(got) != 1 {
		t.Fatalf("flags %v", got)
	}
	if u := got[0].(*cli.StringFlag).Usage; u != "the x [$X_VAR]" {
		t.Errorf("usage %q", u)
	}
	if flag.Usage != "the x" || len(flag.EnvVars) != 0 {
		t.Errorf("the setting's flag changed: %+v", flag)
	}
}

// Limits merge key by key: a flag replaces the file's value of its key,
// larger or smaller, and the file's other keys stay.
func TestLimits(t *testing.T) {
	f := confFile(t, "[default]\ntime = 30s\n[sec]\ncpus = 4\nmemory = 8G\nimage_size = 2G\n")
	var l spec.Limits
	if err := resolveArgs(t, f, Limits(&l, "sec"), "--memory", "1G", "--pids", "10"); err != nil {
		t.Fatal(err)
	}
	if got, want := l.String(), "cpus=4 memory=1G pids=10 image=2G time=30.0s"; got != want {
		t.Errorf("limits %s, want %s", got, want)
	}
	// image wins over the older image_size, and --image over both.
	f = confFile(t, "[sec]\nimage_size = 2G\nimage = 3G\n")
	l = spec.Limits{}
	if err := resolveArgs(t, f, Limits(&l, "sec")); err != nil || l.Image == nil || *l.Image != 3<<30 {
		t.Errorf("image %v (%v), want 3G", l.Image, err)
	}
	l = spec.Limits{}
	if err := resolveArgs(t, f, Limits(&l, "sec"), "--image", "1G"); err != nil || l.Image == nil || *l.Image != 1<<30 {
		t.Errorf("image %v (%v), want 1G", l.Image, err)
	}

	// FileLimits: the file alone; Limits(…, ""): the flags alone.
	var fileOnly, flagsOnly spec.Limits
	if len(Flags(FileLimits(&fileOnly, "sec"))) != 0 {
		t.Error("FileLimits has flags")
	}
	table := append(FileLimits(&fileOnly, "sec"), Limits(&flagsOnly, "")...)
	if err := resolveArgs(t, f, table, "--cpus", "2"); err != nil {
		t.Fatal(err)
	}
	if fileOnly.String() != "image=3G" || flagsOnly.String() != "cpus=2" {
		t.Errorf("file %s, flags %s", fileOnly, flagsOnly)
	}
	var opts spec.Limits
	app := &cli.App{Name: "test", Flags: LimitFlags(), Action: func(c *cli.Context) (err error) {
		opts, err = LimitOptions(c)
		return err
	}}
	if err := app.Run([]string{"test", "--memory", "1G", "--time", "5s"}); err != nil || opts.String() != "memory=1G time=5.0s" {
		t.Errorf("LimitOptions: %s %v", opts, err)
	}
	for _, fl := range LimitFlags() {
		if n := fl.Names()[0]; n == "cpus-offset" || n == "gpus-offset" {
			t.Errorf("--%s: set by the node, not an option", n)
		}
	}
}

// Bad limits name the file, section and key, each of them.
func TestBadLimits(t *testing.T) {
	f := confFile(t, "[worker]\nmemory = 64MiB\nnetwork = maybe\nimage_size = 2X\n")
	err := resolveArgs(t, f, FileLimits(new(spec.Limits), "worker"))
	if err == nil {
		t.Fatal("bad limits accepted")
	}
	for _, want := range []string{f.Path, "[worker] memory", "64MiB", "[worker] network", "maybe", "[worker] image_size"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// Load reads the file --config-file names, else the one its variable
// names; a named file that is missing is a usage error.
func TestLoad(t *testing.T) {
	const env = "KOLEJKA_SETTINGS_TEST_FILE"
	byFlag := confFile(t, "[x]\nfrom = flag\n")
	byEnv := confFile(t, "[x]\nfrom = env\n")
	t.Setenv(env, byEnv.Path)
	from := func(args ...string) (string, error) {
		var got string
		app := &cli.App{
			Name:  "test",
			Flags: Flags([]Setting{File(new(string), env)}),
			Action: func(c *cli.Context) error {
				f, err := Load(c, env)
				if err != nil {
					return err
				}
				got, _ = f.Get("x", "from")
				return nil
			},
			ExitErrHandler: func(*cli.Context, error) {},
		}
		err := app.Run(append([]string{"test"}, args...))
		return got, err
	}
	if got, err := from("--config-file", byFlag.Path); err != nil || got != "flag" {
		t.Errorf("by flag: %q %v", got, err)
	}
	if got, err := from(); err != nil || got != "env" {
		t.Errorf("by variable: %q %v", got, err)
	}
	_, err := from("--config-file", filepath.Join(t.TempDir(), "none.conf"))
	var ce *cliexit.Error
	if !errors.As(err, &ce) || ce.Code != cliexit.Usage {
		t.Errorf("missing file: %v, want a usage error", err)
	}
}

func TestValues(t *testing.T) {
	var n int64 = 5
	if err := SizeOrUnbounded(&n)("-1"); err != nil || n != -1 {
		t.Errorf("-1: %d %v", n, err)
	}
	if err := SizeOrUnbounded(&n)("2k"); err != nil || n != 2048 {
		t.Errorf("2k: %d %v", n, err)
	}
	if err := Size(&n)("-1"); err == nil {
		t.Error("Size took -1")
	}
	var d time.Duration
	if err := PositiveDuration(&d)("0"); err == nil {
		t.Error("PositiveDuration took 0")
	}
	if err := Duration(&d)("0"); err != nil || d != 0 {
		t.Errorf("Duration 0: %v %v", d, err)
	}
	var s string
	if err := Trim(String(&s))("  x y  "); err != nil || s != "x y" {
		t.Errorf("Trim: %q", s)
	}
	if err := String(&s)("  x  "); err != nil || s != "  x  " {
		t.Errorf("String: %q", s)
	}
	var list []string
	if err := List(&list)(" a, ,b "); err != nil || strings.Join(list, "|") != "a|b" {
		t.Errorf("List: %q", list)
	}
	var l spec.Limits
	spec.ParseLimit(&l, "pids", "9")
	if err := LimitList(&l)("cpus=1, memory=1G"); err != nil || l.String() != "cpus=1 memory=1G" {
		t.Errorf("LimitList: %s %v (it replaces the whole)", l, err)
	}
	on := true
	if err := Bool(&on)("maybe"); err == nil || !on {
		t.Errorf("Bool took maybe or changed the value: %v %v", on, err)
	}
}
