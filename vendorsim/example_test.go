package vendorsim_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/tokenbroker/tokenbroker/vendorsim"
)

func Example() {
	sim := vendorsim.New()
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": "demo-client", "client_secret": "demo-secret"})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/smartdocumentor/connect/token", "application/x-www-form-urlencoded",
		strings.NewReader("grant_type=client_credentials&scope=WebAPI&client_id=demo-client&client_secret=wrong"))
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	fmt.Println(string(body))
	fmt.Println(sim.Requests("smartdocumentor"), sim.Issued("smartdocumentor"))
	// Output:
	// 400
	// {
	//     "error": "invalid_client"
	// }
	// 1 0
}
