package main

// This file owns the client's image commands: `image push|ls|rm`, images
// kept by the server for nodes that lack them (docs/images.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/kolejka-go/kolejka/client"
)

// imageCommand is `image` and its subcommands.
func imageCommand() *cli.Command {
	return &cli.Command{Name: "image", Usage: "images on the server, which nodes fetch when a task names one they lack", Subcommands: []*cli.Command{
		cmd("push", "NAME FILE", "store an image (a docker save tar, an OCI layout tar or folder, a rootfs tar) as NAME, print its full name", 2, nil, imagePush),
		cmd("ls", "", "list the server's images", 0,
			[]cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}, imageList),
		cmd("rm", "NAME", "remove an image (its owner, managers)", 1, nil, imageRemove),
	}}
}

func imagePush(ctx context.Context, c *cli.Context, cl *client.Client) error {
	name, err := cl.ImagePush(ctx, c.Args().Get(0), c.Args().Get(1))
	if err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func imageList(ctx context.Context, c *cli.Context, cl *client.Client) error {
	imgs, err := cl.Images(ctx)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		data, err := json.MarshalIndent(imgs, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(data))
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tOWNER\tSIZE\tCREATED")
	for _, i := range imgs {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", i.Name, i.Owner, i.Size, i.TimeCreate)
	}
	return w.Flush()
}

func imageRemove(ctx context.Context, c *cli.Context, cl *client.Client) error {
	return cl.ImageRemove(ctx, c.Args().Get(0))
}
