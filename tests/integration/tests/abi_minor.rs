//! A plugin older than the host (same major, lower minor) is refused by host-shim with a
//! message naming both versions. A test binary of its own: building the odd plugin briefly
//! replaces `target/debug`'s plugin, which no other test in this process may load meanwhile.

mod common;

use mantle_host_shim::{LoadError, Plugin};

#[test]
fn a_plugin_with_a_lower_minor_abi_is_refused() {
    const { assert!(mantle_abi::ABI_MINOR >= 1, "needs a host minor above 0") };
    let older = common::build_plugin_reporting_abi_minor(mantle_abi::ABI_MINOR - 1);
    let err = Plugin::load(&older).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::AbiMismatch { .. }), "{msg}");
    let expected = format!(
        "incompatible ABI (host ABI {major}.{host}): plugin implements ABI {major}.{plugin}",
        major = mantle_abi::ABI_MAJOR,
        host = mantle_abi::ABI_MINOR,
        plugin = mantle_abi::ABI_MINOR - 1
    );
    assert!(msg.contains(&expected), "{msg}");
    // The same build reporting the host's minor loads.
    let facts = Plugin::load(common::plugin_path()).unwrap().facts().clone();
    assert_eq!(
        (facts.abi_major, facts.abi_minor),
        (mantle_abi::ABI_MAJOR, mantle_abi::ABI_MINOR)
    );
}
