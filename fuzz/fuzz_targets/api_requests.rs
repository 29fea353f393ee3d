//! Every API request body: the JSON extractor and the conversion into core types answer any
//! bytes with a client error (4xx), never a panic or a 500. The first byte picks the route
//! (`orch_server::api::fuzz::ROUTES`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    orch_server::api::fuzz::request_body(route, body);
});
