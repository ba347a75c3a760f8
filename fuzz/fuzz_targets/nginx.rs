#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| slipway_fuzz::nginx(data));
