package api_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDescribesEveryRoute fetches /api/v1/openapi.json from a
// real server without a token, checks it is valid OpenAPI, that every
// operation says who may call it, and that a request for each described
// operation reaches a handler (not the "no API endpoint" answer).
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := startHTTP(t)
	res, err := s.client.Get(s.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("not valid OpenAPI: %v", err)
	}
	ops := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops++
			if op.Security == nil {
				t.Errorf("%s %s: no security requirement (say who may call it)", method, path)
			}
			if strings.HasPrefix(path, "/api/v1/") && !strings.HasPrefix(path, "/api/v1/agent/") && path != "/api/v1/openapi.json" {
				if op.Extensions["x-role"] == nil {
					t.Errorf("%s %s: an operator operation without x-role", method, path)
				}
			}
			if op.Responses.Default() == nil {
				t.Errorf("%s %s: no error answer described", method, path)
			}
			// Reach it: any path parameter as "x".
			url := s.URL + strings.NewReplacer("{site}", "x", "{product}", "x", "{version}", "x", "{id}", "1", "{name}", "x", "{path}", "x").Replace(path)
			req, _ := http.NewRequest(method, url, nil)
			res, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), "no API endpoint") || res.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s %s is described but not served: %d %s", method, path, res.StatusCode, b)
			}
		}
	}
	if ops < 30 {
		t.Errorf("the description has %d operations; the server has more", ops)
	}
}

// TestRoutesOnlyThroughTheList checks that the package registers no
// handler around Server.routes, the list the description is made from:
// the only Handle calls are in handle (each route) and Handler (the
// "no API endpoint" answer for the rest of /api/v1/).
func TestRoutesOnlyThroughTheList(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
					return true
				}
				if fn.Name.Name != "handle" && fn.Name.Name != "Handler" {
					t.Errorf("%s: %s registers a route outside Server.routes: add it to the list (openapi.go)", fset.Position(call.Pos()), fn.Name.Name)
				}
				if fn.Name.Name == "Handler" && sel.Sel.Name == "Handle" {
					t.Errorf("%s: Handler registers a route outside Server.routes: add it to the list (openapi.go)", fset.Position(call.Pos()))
				}
				return true
			})
		}
	}
}
