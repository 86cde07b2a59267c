// Package docs holds no code. Its tests read design.md, the project's
// design document, and fail where it disagrees with the code: the package
// table and import graph ("What each package owns") against go list, the
// metric table (Operations) against the metrics registry, the Redis key
// and channel tables (Storage) against store/redisstore's key builders,
// and the configuration key table (Configuration) against config.Config's
// yaml tags. Each failure names the entry and the side it is missing on.
package docs
