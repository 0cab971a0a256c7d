print("hello from the test image")
