//! The `fanout` binary's tool subcommands: `sig gen|pmk|verify` and `config check`, run as a user would.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fanout");
// From the official TLS-Sig-API v2 vectors.
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const V1_SIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";
const V3_PMK: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJlLMxM4IIlmbkgIUNzNMWlxalFSaVpICscHR09Ut1zMpKMCgyTcvwqQ9KBIo4hwVFhYc5gZoAFiHSEuyEzHaStPMciLDIytNjfpMAstdIFqMu3pMqyoCInpCTNKbtcuzwzK0M-3DMj0yXdVqkWAFWGRY8_";

fn run(args: &[&str]) -> (String, String, i32) {
    let out = Command::new(BIN).args(args).output().expect("run fanout");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
        out.status.code().unwrap_or(-1),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not one JSON line ({e}): {s}"))
}

#[test]
fn sig_gen_matches_the_official_library() {
    let (out, _, code) = run(&[
        "sig",
        "gen",
        "--app",
        "1400000000",
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--expire",
        "15552000",
        "--time",
        "1700000000",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, V1_SIG);
}

#[test]
fn sig_pmk_matches_the_official_library() {
    let (out, _, code) = run(&[
        "sig",
        "pmk",
        "--app",
        "1400000000",
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--room",
        "1234",
        "--privileges",
        "255",
        "--expire",
        "86400",
        "--time",
        "1700000000",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, V3_PMK);
}

#[test]
fn sig_verify_valid_usersig_prints_fields_and_exits_0() {
    let (out, _, code) = run(&[
        "sig",
        "verify",
        "--app",
        "1400000000",
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--now",
        "1715552000",
        V1_SIG,
    ]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["identifier"], "xiaojun");
    assert_eq!(v["sdk_app_id"], 1400000000u32);
    assert_eq!(v["expires_at"], 1715552000u64);
}

#[test]
fn sig_verify_reports_each_failure_and_exits_1() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--app",
                "1400000000",
                "--key",
                KEY,
                "--user",
                "xiaojun",
                "--now",
                "1715552001",
                V1_SIG,
            ],
            "expired",
        ),
        (
            &[
                "--app",
                "1400000000",
                "--key",
                KEY,
                "--user",
                "someone",
                "--now",
                "1700000100",
                V1_SIG,
            ],
            "identifier mismatch",
        ),
        (
            &[
                "--app",
                "1400000001",
                "--key",
                KEY,
                "--user",
                "xiaojun",
                "--now",
                "1700000100",
                V1_SIG,
            ],
            "sdkappid mismatch",
        ),
        (
            &[
                "--app",
                "1400000000",
                "--key",
                "not-the-key",
                "--user",
                "xiaojun",
                "--now",
                "1700000100",
                V1_SIG,
            ],
            "bad signature",
        ),
        (
            &[
                "--app",
                "1400000000",
                "--key",
                KEY,
                "--user",
                "xiaojun",
                "--now",
                "1700000100",
                "%%%not-a-token",
            ],
            "malformed",
        ),
    ];
    for (args, error) in cases {
        let mut full = vec!["sig", "verify"];
        full.extend_from_slice(args);
        let (out, _, code) = run(&full);
        assert_eq!(code, 1, "{out}");
        let v = json(&out);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], error, "{out}");
    }
}

#[test]
fn sig_verify_private_map_key_prints_privileges() {
    let (out, _, code) = run(&[
        "sig",
        "verify",
        "--app",
        "1400000000",
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--room",
        "1234",
        "--now",
        "1700000100",
        V3_PMK,
    ]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    assert_eq!(v["kind"], "PrivateMapKey");
    assert_eq!(v["privilege_map"], 255);
    assert_eq!(v["room_id"], 1234);
    assert_eq!(v["privileges"]["recv_sub_video"], true);
    // The same key for another room is refused.
    let (out, _, code) = run(&[
        "sig",
        "verify",
        "--app",
        "1400000000",
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--room",
        "1235",
        "--now",
        "1700000100",
        V3_PMK,
    ]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["error"], "room mismatch");
}

#[test]
fn sig_gen_then_verify_string_room_round_trips() {
    let (token, _, code) = run(&[
        "sig",
        "pmk",
        "--app",
        "7",
        "--key",
        "k",
        "--user",
        "bob",
        "--str-room",
        "room-1",
        "--privileges",
        "3",
    ]);
    assert_eq!(code, 0);
    let (out, _, code) = run(&[
        "sig",
        "verify",
        "--app",
        "7",
        "--key",
        "k",
        "--user",
        "bob",
        "--str-room",
        "room-1",
        &token,
    ]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    assert_eq!(v["str_room_id"], "room-1");
    assert_eq!(v["privileges"]["enter_room"], true);
    assert_eq!(v["privileges"]["send_audio"], false);
}

#[test]
fn config_check_accepts_a_good_file_and_names_the_bad_key() {
    let dir = std::env::temp_dir().join(format!("fanout-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, fanout_server::config::DEFAULT_TOML).unwrap();
    let (out, _, code) = run(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        fanout_server::config::DEFAULT_TOML.replace("max_rooms = 1000", "max_roomz = 1000"),
    )
    .unwrap();
    let (_, err, code) = run(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("max_roomz"), "{err}");

    let (_, err, code) = run(&[
        "config",
        "check",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_the_subcommands() {
    let (out, _, code) = run(&["--help"]);
    assert_eq!(code, 0);
    for word in ["serve", "sig", "config"] {
        assert!(out.contains(word), "{out}");
    }
}
