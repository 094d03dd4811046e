//! The one test-server configuration of the three harnesses (`common`, `media_common` and
//! `ops_common`): the app ids and secret keys, the apps and roles they all start the server with,
//! and the TOML around them. A harness states only what is its own in a [`TestConfig`] (timers,
//! media binding, quotas, extra roles, REST and callback settings, extra apps), so a change to the
//! shared part cannot drift between copies.

pub const APP_A: u32 = 1400000001;
pub const KEY_A: &str = "key-of-app-a-0123456789abcdef";
pub const APP_B: u32 = 1400000002;
pub const KEY_B: &str = "key-of-app-b-fedcba9876543210";
/// App C requires PrivateMapKeys.
pub const APP_C: u32 = 1400000003;
pub const KEY_C: &str = "key-of-app-c-pmk-required";

/// The secret key of a shared app (A, B or C), or a key no app has.
pub fn key_of(app: u32) -> &'static str {
    match app {
        APP_A => KEY_A,
        APP_B => KEY_B,
        APP_C => KEY_C,
        _ => "unknown-app-key",
    }
}

/// What a harness adds to the shared config. Each field holds TOML lines; empty adds nothing.
#[derive(Default)]
pub struct TestConfig<'a> {
    /// `[server]` keys added to `http` on a free loopback port and `ping_interval_secs = 1`; when
    /// a key is given more than once (here or with those two), its last line wins.
    pub server: &'a str,
    /// `[media]` keys added to `udp_port = 0` (a free port) and `workers = 1`.
    pub media: &'a str,
    /// Keys of app A (default role `anchor`).
    pub app_a: &'a str,
    /// Role tables of app A besides `anchor` (1500 kbit/s, 1280x720, 30 fps), `anchor_sd`
    /// (600 kbit/s, 640x360, 15 fps) and `audience`.
    pub app_a_roles: &'a str,
    /// Keys of app B (default role `audience`, roles `audience` and `anchor`).
    pub app_b: &'a str,
    /// Whole `[[apps]]` tables after A and B (e.g. [`app_c`]).
    pub more_apps: &'a str,
}

/// App A's roles.
const APP_A_ROLES: &str = r#"
[apps.roles.anchor]
can_publish = true
max_video_kbps = 1500
max_width = 1280
max_height = 720
max_fps = 30

[apps.roles.anchor_sd]
can_publish = true
max_video_kbps = 600
max_width = 640
max_height = 360
max_fps = 15

[apps.roles.audience]
can_publish = false
"#;

/// A role `anchor` that may publish, with no caps of its own.
const ANCHOR_ROLE: &str = "\n[apps.roles.anchor]\ncan_publish = true\n";

/// App B's roles.
const APP_B_ROLES: &str = r#"
[apps.roles.audience]
can_publish = false

[apps.roles.anchor]
can_publish = true
"#;

impl TestConfig<'_> {
    /// The config as TOML, for `fanout_server::config::Config::from_toml` or a config file.
    pub fn toml(&self) -> String {
        let server = last_line_per_key(&format!(
            "http = \"127.0.0.1:0\"\nping_interval_secs = 1\n{}",
            self.server
        ));
        let media = self.media;
        let a_roles = format!("{APP_A_ROLES}\n{}", self.app_a_roles);
        let app_a = app_table(APP_A, KEY_A, "anchor", self.app_a, &a_roles);
        let app_b = app_table(APP_B, KEY_B, "audience", self.app_b, APP_B_ROLES);
        let more_apps = self.more_apps;
        format!(
            r#"
[server]
{server}
[media]
udp_port = 0
workers = 1
{media}
{app_a}{app_b}{more_apps}"#
        )
    }
}

/// An `[[apps]]` table: its id, key and default role, `settings` (keys) and `roles` (role tables).
fn app_table(app: u32, key: &str, default_role: &str, settings: &str, roles: &str) -> String {
    format!(
        r#"
[[apps]]
sdk_app_id = {app}
secret_key = "{key}"
default_role = "{default_role}"
{settings}
{roles}"#
    )
}

/// An `[[apps]]` table with one role, `anchor` (the default, may publish), and `settings`.
pub fn anchor_app(app: u32, key: &str, settings: &str) -> String {
    app_table(app, key, "anchor", settings, ANCHOR_ROLE)
}

/// App C's table: [`anchor_app`] with PrivateMapKeys required.
pub fn app_c() -> String {
    anchor_app(APP_C, KEY_C, "private_map_key_required = true")
}

/// The non-empty `key = value` lines of `lines`, each key's last line only.
fn last_line_per_key(lines: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let lines: Vec<&str> = lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .enumerate()
        .filter(|(i, line)| !lines[i + 1..].iter().any(|later| key(later) == key(line)))
        .map(|(_, line)| format!("{line}\n"))
        .collect()
}
