/**
 * The configuration `edge-time run` uses when no `--config` is given, kept
 * as TOML text so `edge-time run` and the docs show operators the same file.
 * It is also written to appliance/edge-time.toml by the install script.
 */
export const DEFAULT_CONFIG_TOML = `# edge-time embedded default configuration.
# Every key has a default; this file only states the important ones.

[server]
listen = ["0.0.0.0:123", "[::]:123"]
workers = 0                 # 0 = one per CPU core
allow = ["0.0.0.0/0", "::/0"]
rate_limit = { interval_s = 2, burst = 8, kod = true }

[clock]
control = true
driftfile = "/var/lib/edge-time/drift"
orphan_stratum = 7

[[source]]
address = "pool.ntp.org"
kind = "pool"
iburst = true

[status]
listen = "127.0.0.1:8123"
`;
