import Testing
import SquashFS

// Replaced by real tests when the module lands.
@Test func SquashFSModuleLinks() { _ = SquashFSModule.self }
