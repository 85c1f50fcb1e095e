//! The request path's parsers on untrusted bytes: classification, then the body typed as each
//! operation (item keys, projections, query parameters, the tables named). Nothing may panic,
//! and what is typed for the cache names exactly the table it is cached under.
#![no_main]

use bytes::Bytes;
use dynamo_cache::wire::operation::{Operation, Target};
use dynamo_cache::wire::request::{DynamoRequest, Form};
use dynamo_cache::wire::tables::{Named, Naming};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = Target::parse(text);
    }
    let op = Operation::ALL[selector as usize % Operation::ALL.len()];
    let naming = Naming::new("us-east-1");
    let target = HeaderValue::from_static("DynamoDB_20120810.Fuzz");
    let request = DynamoRequest::parse(op, target, Bytes::copy_from_slice(body), &naming);
    assert_eq!(&request.body[..], body, "the body is forwarded byte for byte");
    if let Form::Get(get) = &request.form {
        assert_eq!(request.tables().as_deref(), Some(&Named::Tables(vec![get.table.clone()])));
        assert_eq!(get.key.table(), get.table);
    }
});
