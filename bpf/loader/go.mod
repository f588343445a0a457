module skiff.dev/loader

go 1.25.0
