// The shipped recipes and labs are embedded (`include_dir!` in src/paths.rs); a changed file
// there must rebuild the engine, which include_dir alone does not ask cargo for.
fn main() {
    println!("cargo:rerun-if-changed=../assets");
    println!("cargo:rerun-if-changed=../labs");
    println!("cargo:rerun-if-changed=build.rs");
}
