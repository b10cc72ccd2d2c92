// Package tasktype owns task types: task folders made into templates that a
// user fills in with parameters, as saltant's task types are. It knows no
// HTTP and no store; the server's handlers parse and render through it.
//
// The lifecycle:
//
//  1. Parse reads a type's kolejka_task.json: an ordinary Kolejka task plus a
//     "params" section and an optional "pass_env" list, with {name}
//     placeholders in args, environment values, stdin/stdout/stderr and the
//     names (keys) of files. Every placeholder must name a declared
//     parameter; "{{" and "}}" stand for literal braces. The store gives the
//     parsed type its Name and Version.
//  2. Render fills the placeholders with a user's values and files (a file
//     parameter names a file the user adds to the task folder), applying
//     defaults. It refuses unknown, missing and mistyped parameters, naming
//     them, and validates the result with spec's own rules, so a value like
//     "../x" cannot move a file or an output out of the task folder.
//  3. The result is a plain *spec.Task: Kolejka's own foreman can run it.
//     Where it came from (type, version, parameters, pass_env) is an Origin
//     the server stores beside it, never a key in kolejka_task.json.
//
// Substitution builds Go values, not JSON or shell text: a value lands
// inside one argument (it never splits into more) and its quotes or braces
// stay literal characters.
package tasktype
