import Testing
import OSBuildKit

// Replaced by real tests when the module lands.
@Test func OSBuildKitModuleLinks() { _ = OSBuildKitModule.self }
