//! A plugin that claims the Mantle root-module name but implements ABI 2.0 with another
//! layout. Hosts built for ABI 1.x must refuse it at load time with a clear message.

use abi_stable::{
    declare_root_module_statics, export_root_module, library::RootModule, package_version_strings,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, StableAbi,
};

/// ABI 2.0 root module: a different first entry point.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = FakeModuleRef)))]
pub struct FakeModule {
    /// Returns 2.
    #[sabi(last_prefix_field)]
    pub abi_major: extern "C" fn() -> u64,
}

impl RootModule for FakeModuleRef {
    declare_root_module_statics! {FakeModuleRef}
    const BASE_NAME: &'static str = "mantle_provider";
    const NAME: &'static str = "mantle_provider";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

extern "C" fn abi_major() -> u64 {
    2
}

/// Exported root module.
#[export_root_module]
pub fn get_root_module() -> FakeModuleRef {
    FakeModule { abi_major }.leak_into_prefix()
}
