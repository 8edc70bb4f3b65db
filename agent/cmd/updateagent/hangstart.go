//go:build hangstart

package main

const hang = true
