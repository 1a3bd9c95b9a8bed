import Testing
import EROFS

// Replaced by real tests when the module lands.
@Test func EROFSModuleLinks() { _ = EROFSModule.self }
