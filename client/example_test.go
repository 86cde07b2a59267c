package client_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/client"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// A TokenSource asks the broker for the profile's token and keeps it until
// it nears expiry; it plugs into anything that takes an oauth2.TokenSource.
func ExampleClient_TokenSource() {
	conn, err := grpc.NewClient(brokerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tb := client.New(conn)

	ts := tb.TokenSource(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "demo-smartdocumentor"})
	tok, err := ts.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), tok.Valid(), tok.Extra("scope"))
	// Output: Bearer true WebAPI
}

// Transport authorizes every request to the vendor's API with the broker's
// token; a 401 makes it report the token as rejected and retry once with a
// new one.
func ExampleClient_Transport() {
	conn, err := grpc.NewClient(brokerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tb := client.New(conn)

	api := &http.Client{Transport: tb.Transport(&tokenbrokerv1.GetTokenRequest{Profile: "demo-smartdocumentor"}, nil)}
	resp, err := api.Get(documentAPI + "/documents")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// On Kubernetes a caller authenticates with its projected service-account
// token (a volume with a serviceAccountToken source, audience
// "tokenbroker"): WithTokenFile sends it with every call and follows the
// kubelet's renewals. The broker's clients.<name>.jwt_subject names the
// service account.
func ExampleWithTokenFile() {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12} // the system roots, or the broker's CA
	conn, err := grpc.NewClient("tokenbroker.tokens.svc:9090",
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		client.WithTokenFile("/var/run/secrets/tokenbroker/token"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	tb := client.New(conn)
	_ = tb.TokenSource(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "acme-smartdoc"})
}
