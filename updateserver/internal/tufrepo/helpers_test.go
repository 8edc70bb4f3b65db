package tufrepo

import "os"

func removeKey(r Repo, role string) error { return os.Remove(r.Keys.Path(role)) }
