import Testing
import DiskImage

// Replaced by real tests when the module lands.
@Test func DiskImageModuleLinks() { _ = DiskImageModule.self }
