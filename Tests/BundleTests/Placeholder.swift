import Testing
import Bundle

// Replaced by real tests when the module lands.
@Test func BundleModuleLinks() { _ = BundleModule.self }
