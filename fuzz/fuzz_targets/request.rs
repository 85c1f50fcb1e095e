//! The request path's parsers on untrusted bytes: classification, then the body as each
//! operation the proxy reads (item keys, projections, query parameters, the tables named).
//! Nothing may panic, and an answer from memory is never made up from an empty cache.
#![no_main]

use std::sync::OnceLock;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use dynamo_cache::operation::{Operation, Target};
use dynamo_cache::{Config, State, auth, items, queries};
use libfuzzer_sys::fuzz_target;

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let config = Config {
            // Never contacted: only the parts before the upstream run here.
            upstream: Some("http://127.0.0.1:9".into()),
            ..Config::default()
        };
        let credentials = Credentials::new("fuzz", "fuzz", None, None, "fuzz");
        State::new(
            config,
            "us-east-1",
            SharedCredentialsProvider::new(credentials),
        )
        .expect("a valid state")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = Target::parse(text);
    }
    let op = Operation::ALL[selector as usize % Operation::ALL.len()];
    let state = state();
    assert!(items::answer_from_memory(state, op, body).is_none());
    assert!(queries::answer_from_memory(state, op, body).is_none());
    let _ = auth::tables_named(op, body);
});
