//! Feeds untrusted bytes to the API's JSON body parser, `parse_json`, for every request body
//! type the API reads.
//!
//! The first byte picks the type tried first, modulo 5 (the seeds use `A` for `VmSpec`, then
//! `B` image import, `C` VM stop, `D` tenant, `E` token); the rest is the body. Each body is
//! tried as every type, so no type waits for the fuzzer to find its byte. `parse_json` must
//! accept exactly what `serde_json::from_slice` accepts, what parses must serialize and parse
//! back to an equal value, and a [`VmSpec`] must validate without panicking.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use novacron_api::extract::parse_json;
use novacron_api::types::{
    ImageImportRequest, TenantPutRequest, TokenCreateRequest, VmStopRequest,
};
use novacron_model::VmSpec;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Number of body types, for the first byte.
const TYPES: u8 = 5;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let first = pick % TYPES;
    for offset in 0..TYPES {
        match (first + offset) % TYPES {
            0 => {
                if let Some(spec) = check::<VmSpec>(body) {
                    // Only that it returns: any answer is fine for an arbitrary spec.
                    let _ = spec.validate();
                }
            }
            1 => {
                check::<ImageImportRequest>(body);
            }
            2 => {
                check::<VmStopRequest>(body);
            }
            3 => {
                check::<TenantPutRequest>(body);
            }
            _ => {
                check::<TokenCreateRequest>(body);
            }
        }
    }
});

/// Parses `body` as a `T`; what parses must survive a JSON round trip unchanged, and
/// `parse_json` must accept exactly what `serde_json::from_slice` accepts.
fn check<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let parsed = parse_json::<T>(body);
    let plain = serde_json::from_slice::<T>(body);
    assert_eq!(
        parsed.as_ref().ok(),
        plain.as_ref().ok(),
        "parse_json and serde_json disagree on {:?}: {:?} vs {:?}",
        String::from_utf8_lossy(body),
        parsed.as_ref().err(),
        plain.as_ref().err(),
    );
    let value = parsed.ok()?;
    let json = serde_json::to_vec(&value).expect("a parsed body serializes");
    let again = parse_json::<T>(&json).unwrap_or_else(|e| {
        panic!(
            "{} does not parse back: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        value,
        again,
        "round trip through {}",
        String::from_utf8_lossy(&json)
    );
    Some(value)
}
