// Package settings resolves the settings of every kolejka command in one
// way. A command declares a table: for each setting its flag, its
// environment variable, its key in kolejka.conf, and its Value, which
// parses and checks a value and stores it where the setting's default
// already stands. Resolve takes each value from the first source that
// gives it:
//
//	flag > environment variable > kolejka.conf (the key in its section, else in [default]) > default
//
// and reports every bad value at once, each naming its source: the flag,
// the variable, or the file, section and key. A setting may lack any of
// the sources (most have no environment variable; some have no flag).
package settings

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/config"
)

// A Value parses a setting's text, checks it and stores it. Its error says
// what is wrong with the value; Resolve adds where the value came from.
type Value func(string) error

// A Setting is one value a command reads, and where it comes from.
type Setting struct {
	// Flag is the command-line option; nil for none. It is looked up by its
	// first name in the command line being run (a subcommand may declare
	// its own flag of that name, with its own usage), and read as text
	// whatever its type: a BoolFlag gives "true" or "false", an IntFlag
	// its digits. It must not carry EnvVars: Env is the setting's variable,
	// read by Resolve, which can then say which of the two a value came
	// from.
	Flag cli.Flag
	// Env is the environment variable; "" for none. Set, even to "", it
	// gives the value.
	Env string
	// Section and Key place the setting in kolejka.conf: Key in Section,
	// else in [default], as Kolejka reads it; Key "" for none. An empty
	// value in the file counts as absent.
	Section, Key string
	// Value parses the winning text into the setting's destination.
	Value Value
}

// name is the flag's name, "" without a flag.
func (s Setting) name() string {
	if s.Flag == nil {
		return ""
	}
	return s.Flag.Names()[0]
}

// Resolve sets each setting of table, in order, from the first source that
// gives it: its flag on c's command line, its environment variable, its
// key in f (nil: no file). A setting no source gives keeps its
// destination's value. Every bad value is reported, joined in one usage
// error (exit code 2), each naming its source; the good ones are stored
// all the same.
func Resolve(c *cli.Context, f *config.File, table []Setting) error {
	var errs []error
	for _, s := range table {
		if err := resolve(c, f, s); err != nil {
			errs = append(errs, err)
		}
	}
	return cliexit.WithCode(cliexit.Usage, errors.Join(errs...))
}

func resolve(c *cli.Context, f *config.File, s Setting) error {
	if name := s.name(); name != "" && c != nil && c.IsSet(name) {
		if err := s.Value(c.String(name)); err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		return nil
	}
	if s.Env != "" {
		if v, ok := os.LookupEnv(s.Env); ok {
			if err := s.Value(v); err != nil {
				return fmt.Errorf("%s: %w", s.Env, err)
			}
			return nil
		}
	}
	if s.Key != "" && f != nil {
		if v, ok := f.Get(s.Section, s.Key); ok && v != "" {
			if err := s.Value(v); err != nil {
				return f.Error(s.Section, s.Key, err)
			}
		}
	}
	return nil
}

// Flags are the flags of table's settings, for a command to declare. A
// string flag of a setting with an environment variable says so in its
// usage, as urfave/cli would say it of its own EnvVars.
func Flags(table []Setting) []cli.Flag {
	var flags []cli.Flag
	for _, s := range table {
		if s.Flag == nil {
			continue
		}
		if sf, ok := s.Flag.(*cli.StringFlag); ok && s.Env != "" {
			hinted := *sf
			hinted.Usage += " [$" + s.Env + "]"
			flags = append(flags, &hinted)
			continue
		}
		flags = append(flags, s.Flag)
	}
	return flags
}

// FileFlag is --config-file, the option naming kolejka.conf.
func FileFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "config-file", Usage: "kolejka.conf to read (default: the first of " + fmt.Sprint(config.SearchPath()) + ")"}
}

// File is the setting naming kolejka.conf: --config-file, else the
// variable env ("" for none).
func File(path *string, env string) Setting {
	return Setting{Flag: FileFlag(), Env: env, Value: String(path)}
}

// Load reads the kolejka.conf that --config-file, else the variable env
// ("" for none), names; else the first of config.SearchPath(), if any.
// Errors are usage errors.
func Load(c *cli.Context, env string) (*config.File, error) {
	var path string
	if err := Resolve(c, nil, []Setting{File(&path, env)}); err != nil {
		return nil, err
	}
	f, err := config.Load(path)
	return f, cliexit.WithCode(cliexit.Usage, err)
}

// Config is the setting naming the client section of kolejka.conf to
// read: --config, else the variable env ("" for none).
func Config(name *string, env string) Setting {
	return Setting{
		Flag:  &cli.StringFlag{Name: "config", Usage: "client section of kolejka.conf (default: [default] config, else client)"},
		Env:   env,
		Value: String(name),
	}
}

// ClientSection is the client section of f to read: the one --config,
// else the variable env ("" for none), names; else [default] config; else
// client.
func ClientSection(c *cli.Context, f *config.File, env string) (string, error) {
	var name string
	err := Resolve(c, nil, []Setting{Config(&name, env)})
	return f.ClientSection(name), err
}
