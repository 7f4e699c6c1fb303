//! Fuzz target: the header address parser used for `-t` recipients and From:
//! policy (`message::headers::address_list`), the qualification of bare local
//! names (`qualify_value`), and the wildcard matcher of `from=` patterns, over
//! any header value. Nothing may panic; a qualified value must still parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vsendmail::intake::headers;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let addrs = headers::address_list(&value);
    if let Some(q) = headers::qualify_value(&value, "fuzz.example") {
        let _ = headers::address_list(&q);
    }
    for a in &addrs {
        let _ = vsendmail::base::address::validate(a, "recipient");
        let _ = vsendmail::base::address::wildcard(a, "alice@shop.example");
        let _ = vsendmail::base::address::wildcard("*@shop.example", a);
    }
    let _ = headers::is_field_start(data);
});
