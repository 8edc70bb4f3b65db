//go:build failstart && !hangstart

package main

const hang = false
