package channels

// Version is the version of Channels for Go, in semantic-versioning form
// without a leading "v". CHANGELOG.md lists what each version holds.
const Version = "0.1.0"
