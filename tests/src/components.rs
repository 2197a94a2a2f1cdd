//! Hand-made connector components for hostile tests: wit-component's dummy
//! implementation of the `connector` world (every function traps), printed as
//! text, edited, and encoded again. What a compiler would never emit (many
//! memories, a lying `cabi_realloc`, out-of-bounds or non-UTF-8 results) is
//! written here by hand.

use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};

/// The export name of connector-api function `name` in the module text.
pub fn api_export(name: &str) -> String {
    format!("sluice:connector/connector-api@0.1.0#{name}")
}

/// The connector world's dummy core module as text.
pub fn dummy_wat() -> String {
    let (resolve, world) = world();
    let module =
        wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    wasmprinter::print_bytes(module).expect("the dummy module prints")
}

fn world() -> (Resolve, wit_parser::WorldId) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(crate::root().join("wit"))
        .expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some("connector"))
        .expect("the connector world");
    (resolve, world)
}

/// Encode edited module text as a connector component.
///
/// # Panics
///
/// When the text does not parse or the component does not encode.
pub fn component(wat: &str) -> Vec<u8> {
    let (resolve, world) = world();
    let mut module = wat::parse_str(wat).unwrap_or_else(|e| panic!("module text: {e}\n{wat}"));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module accepted")
        .validate(true)
        .encode()
        .expect("component encodes")
}

/// Replace the body (`unreachable`) of the function exported as `export`.
///
/// # Panics
///
/// When there is no such export.
pub fn with_body(wat: &str, export: &str, body: &str) -> String {
    let marker = format!("(export \"{export}\" (func ");
    let at = wat
        .find(&marker)
        .unwrap_or_else(|| panic!("no export `{export}`"));
    let rest = &wat[at + marker.len()..];
    let index = &rest[..rest.find(')').expect("export closes")];
    let header = format!("(func (;{index};) ");
    let start = wat.find(&header).expect("the exported function");
    let end = start + wat[start..].find("unreachable").expect("a dummy body");
    format!("{}{body}{}", &wat[..end], &wat[end + "unreachable".len()..])
}

/// Give the first memory `pages` pages and append `extra` definitions
/// (more memories, data segments).
pub fn with_memory(wat: &str, pages: u32, extra: &str) -> String {
    let memory = "(memory (;0;) 0)";
    assert!(wat.contains(memory), "the dummy memory");
    let wat = wat.replacen(memory, &format!("(memory (;0;) {pages})"), 1);
    let end = wat.rfind(')').expect("module closes");
    format!("{}{extra}\n)", &wat[..end])
}
