//go:build !unix

package migrate

// selfCPU and childrenCPU are not measured here: the benchmark prints 0.
func selfCPU() float64     { return 0 }
func childrenCPU() float64 { return 0 }
