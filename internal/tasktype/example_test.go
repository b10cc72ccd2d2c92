package tasktype_test

import (
	"fmt"

	"github.com/kolejka-go/kolejka/internal/tasktype"
)

// A type is parsed once (the store names and numbers it), then rendered for
// each submission into a plain Kolejka task and the record of its origin.
func Example() {
	typ, err := tasktype.Parse([]byte(`{
		"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
		"params": {"n": {"default": "10"}, "src": {"file": true}},
		"limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
		"files": {"run.sh": {"path": "run.sh"}}}`), "kolejka_task.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	typ.Name, typ.Version = "compile", 1

	task, origin, err := typ.Render(map[string]string{"n": "5"}, map[string]string{"src": "main.c"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("args %q\n", task.Args)
	fmt.Println("files", task.Files["run.sh"].Path, task.Files["main.c"].Path)
	fmt.Printf("origin %s v%d %v %v\n", origin.Type, origin.Version, origin.Params, origin.Files)

	// A missing file parameter, an unknown one and a file given as a value
	// are refused by name; nothing is rendered.
	_, _, err = typ.Render(map[string]string{"src": "main.c", "m": "1"}, nil)
	fmt.Println(err)
	_, _, err = typ.Render(nil, map[string]string{"src": "../main.c"})
	fmt.Println(err)
	// Output:
	// args ["sh" "run.sh" "5" "main.c"]
	// files run.sh main.c
	// origin compile v1 map[n:5] map[src:main.c]
	// kolejka_task.json: params["m"]: unknown parameter (declared: n, src)
	// kolejka_task.json: params["src"]: is a file parameter: give it a file, not a value
	// kolejka_task.json: params["src"]: missing (a file parameter: give it a file)
	// kolejka_task.json: params["src"]: with src = "../main.c", files["../main.c"]: file name "../main.c" leaves the folder ("..")
}
