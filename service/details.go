package service

import (
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

type protoMessage = protoadapt.MessageV1

func withDetails(st *status.Status, details ...protoMessage) error {
	if d, err := st.WithDetails(details...); err == nil {
		return d.Err()
	}
	return st.Err()
}
