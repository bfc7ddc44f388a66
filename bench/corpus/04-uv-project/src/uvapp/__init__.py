def main():
    print("uvapp")
