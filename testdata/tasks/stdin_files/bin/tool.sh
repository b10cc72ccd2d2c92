#!/bin/sh
echo tool ran in $(pwd)
echo to stderr >&2
