//! A warm spare is opened as `/proc/self/fd/N`, and `dlopen` returns a library already loaded
//! under the same name without opening anything. Another loader in the process that used the
//! same trick and closed its descriptor leaves such a name behind, and the next file opened
//! gets that descriptor number. The loader must notice and not take the other library for the
//! new version. One test in a binary of its own: it relies on the kernel giving the lowest free
//! descriptor number to the next file, with no other test opening files meanwhile.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use mantle_host_shim::{spare::SpareCopy, Loaded, Plugin};

#[test]
fn a_library_already_loaded_under_the_spares_name_is_not_taken_for_the_new_version() {
    let (v1, v2) = (build_tagged_plugin("v1"), build_tagged_plugin("v2"));
    let len = std::fs::metadata(&v2).unwrap().len();
    // Another loader: v1 in a memory file, opened by its `/proc/self/fd/N` name, the
    // descriptor then closed (the mapping stays, and so does the name `dlopen` knows it by).
    let foreign = SpareCopy::prepare(0).unwrap().fill(&v1).unwrap();
    let name = foreign.path().to_path_buf();
    // SAFETY: the plugin's own debug build; never closed (see host-shim's note on dlclose).
    let library = unsafe { libloading::Library::new(&name) }.unwrap();
    std::mem::forget(library);
    drop(foreign);

    // Our spare gets the closed descriptor's number, so its path is that name.
    let spare = SpareCopy::prepare(len).unwrap();
    assert_eq!(spare.path(), name, "the spare did not reuse the number");
    let loaded = Plugin::load_unless_mapped_into(&v2, Some(spare), |_| None, true).unwrap();
    let Loaded::Opened(plugin) = loaded else {
        panic!("not opened: {loaded:?}")
    };
    assert_eq!(
        plugin.facts().build_tag,
        "v2",
        "the other loader's v1 was taken"
    );
    assert!(
        plugin.loaded_from().starts_with(std::env::temp_dir()),
        "opened from {}",
        plugin.loaded_from().display()
    );
    assert_eq!(
        plugin.fingerprint(),
        mantle_host_shim::fingerprint(&v2).unwrap()
    );
    // A stream on it is v2's.
    let server = mantle_mock_server::MockMantle::start(Some("k")).unwrap();
    let config = serde_json::json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let provider = plugin.create_provider("", &config).unwrap();
    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "which"));
    assert_eq!(text_of(&events), "echo: which");
    let requests = server.requests();
    let ua = requests.last().unwrap().header("user-agent").unwrap();
    assert!(ua.ends_with("+v2"), "{ua}");
}
